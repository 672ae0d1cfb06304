"""The documents the app's own pages send, trusted by id even when only persisted documents are
allowed (COVERPROOF_PERSISTED_ONLY): the sign-in flows and the recipients' form."""

from __future__ import annotations

from app.partners.documents import Document, document_id

VERIFY_EMAIL = (
    "mutation($token: String!, $password: String, $switchAccount: Boolean! = false) "
    "{ verifyEmail(token: $token, password: $password, switchAccount: $switchAccount) "
    "{ emailVerified } }"
)
MAGIC_LINK_SIGN_IN = (
    "mutation($token: String!, $switchAccount: Boolean! = false) "
    "{ signInWithMagicLink(token: $token, switchAccount: $switchAccount) { userId } }"
)
RESET_PASSWORD = (
    "mutation($token: String!, $password: String!) "
    "{ resetPassword(token: $token, newPassword: $password) { ok } }"
)
ACCEPT_INVITATION = (
    "mutation($token: String!, $switchAccount: Boolean! = false) "
    "{ acceptInvitation(token: $token, switchAccount: $switchAccount) { firmId } }"
)
SIGN_UP = "mutation($input: SignUpInput!) { signUp(input: $input) { accepted message } }"
SIGN_IN = (
    "mutation($email: String!, $password: String!) { signInWithPassword(email: $email, "
    "password: $password) { userId firmId role emailVerified } }"
)
REQUEST_MAGIC_LINK = (
    "mutation($email: String!) { requestMagicLink(email: $email) { accepted message } }"
)
REQUEST_RESET = (
    "mutation($email: String!) { requestPasswordReset(email: $email) { accepted message } }"
)
RESEND_VERIFICATION = (
    "mutation($email: String!) { resendVerification(email: $email) { accepted message } }"
)
SIGN_OUT = "mutation { signOut { ok } }"
RECIPIENT_FORM = (
    "query($t: String!) { recipientForm(token: $t) { firmName recipientName templateName "
    "dueDate attestation questions { id label kind required help explainIf explainLabel "
    "choices maxLength minPence maxPence } } }"
)
SUBMIT_DECLARATION = (
    "mutation($t: String!, $i: SubmissionInput!) { submitDeclaration(token: $t, input: $i) "
    "{ submittedAt responseSha256 } }"
)
SUBMISSION_RECEIPT = (
    "query($t: String!, $k: String!) { submissionReceipt(token: $t, idempotencyKey: $k) "
    "{ submittedAt responseSha256 } }"
)

DOCUMENTS: dict[str, Document] = {
    document_id(body): Document(document_id(body), body, name)
    for name, body in {
        "VerifyEmail": VERIFY_EMAIL,
        "SignInWithMagicLink": MAGIC_LINK_SIGN_IN,
        "ResetPassword": RESET_PASSWORD,
        "AcceptInvitation": ACCEPT_INVITATION,
        "SignUp": SIGN_UP,
        "SignInWithPassword": SIGN_IN,
        "RequestMagicLink": REQUEST_MAGIC_LINK,
        "RequestPasswordReset": REQUEST_RESET,
        "ResendVerification": RESEND_VERIFICATION,
        "SignOut": SIGN_OUT,
        "RecipientForm": RECIPIENT_FORM,
        "SubmitDeclaration": SUBMIT_DECLARATION,
        "SubmissionReceipt": SUBMISSION_RECEIPT,
    }.items()
}
