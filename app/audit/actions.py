"""The audit vocabulary: every action the trail may record, in one dotted namespace.

``docs/audit.md`` lists the same names with what each records.
"""

from enum import StrEnum


class Action(StrEnum):
    FIRM_UPDATED = "firm.updated"

    SIGNED_UP = "auth.signed_up"
    SIGN_UP_DUPLICATE = "auth.sign_up.duplicate"
    EMAIL_VERIFIED = "auth.email_verified"
    VERIFICATION_SENT = "auth.verification.sent"
    SIGN_IN_SUCCEEDED = "auth.sign_in.succeeded"
    SIGN_IN_FAILED = "auth.sign_in.failed"
    SIGN_IN_THROTTLED = "auth.sign_in.throttled"
    MAGIC_LINK_REQUESTED = "auth.magic_link.requested"
    PASSWORD_RESET_REQUESTED = "auth.password_reset.requested"
    PASSWORD_RESET_COMPLETED = "auth.password_reset.completed"
    TOKEN_REFUSED = "auth.token.refused"
    SIGNED_OUT = "auth.signed_out"
    SIGNED_OUT_EVERYWHERE = "auth.signed_out_everywhere"
    SESSION_REVOKED = "auth.session.revoked"
    FIRM_SWITCHED = "auth.firm_switched"

    MEMBER_INVITED = "member.invited"
    MEMBER_JOINED = "member.joined"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    INVITATION_REVOKED = "member.invitation_revoked"

    TEMPLATE_CREATED = "template.created"
    TEMPLATE_VERSION_CREATED = "template.version_created"

    COUNTERPARTY_CREATED = "counterparty.created"
    COUNTERPARTY_UPDATED = "counterparty.updated"
    COUNTERPARTY_ARCHIVED = "counterparty.archived"

    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    API_KEY_FIRST_USED = "api_key.first_used"

    DECLARATION_CREATED = "declaration.created"
    DECLARATION_SENT = "declaration.sent"
    DECLARATION_REMINDED = "declaration.reminded"
    DECLARATION_OPENED = "declaration.opened"
    DECLARATION_SUBMITTED = "declaration.submitted"
    DECLARATION_REVOKED = "declaration.revoked"
    DECLARATION_LINK_REISSUED = "declaration.link_reissued"
    DECLARATION_TOKEN_REFUSED = "declaration.token_refused"

    AUDIT_EXPORTED = "audit.exported"
    AUDIT_CHECKPOINT_CREATED = "audit.checkpoint_created"

    EVIDENCE_PACK_REQUESTED = "evidence_pack.requested"
    EVIDENCE_PACK_GENERATED = "evidence_pack.generated"
    EVIDENCE_PACK_FAILED = "evidence_pack.failed"
    EVIDENCE_PACK_DOWNLOADED = "evidence_pack.downloaded"
