"""The recipients' answer page, ``/respond#token=<token>``: rendered in the browser from the pinned
template that the public ``recipientForm`` query returns, and submitted with the one public
mutation. Loading the page changes nothing, even where its script runs: the form is fetched,
and the declaration marked opened, only when the recipient presses "Open the form" (link
scanners and previews that run scripts do not press buttons). Only the server validates; the
inputs carry hints (required, max length).
"""

from __future__ import annotations

import json
import secrets

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.partners import first_party
from app.partners.documents import document_id

# DOM building only (textContent, never innerHTML): template text cannot become markup.
_SCRIPT = """
// A link mailed before the token moved to the fragment: its last path segment, wherever the
// page is served (LINK_BASE_URL may carry a path).
const inPath = location.pathname.includes("/respond/")
  ? decodeURIComponent(location.pathname.split("/").pop()) : "";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || inPath;
const main = document.getElementById("main");
const el = (tag, attrs = {}, text) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};
async function call(documentId, variables) {
  const response = await fetch("/graphql", {method: "POST", credentials: "omit",
    headers: {"content-type": "application/json", "accept": "application/json"},
    body: JSON.stringify({documentId, variables})});
  return response.json();
}
function input(q) {
  const id = "q_" + q.id;
  const box = el("p");
  box.append(el("label", {for: id}, q.label + (q.required ? " *" : "")));
  box.append(el("br"));
  let field;
  if (q.kind === "YES_NO") {
    field = el("select", {id, name: q.id});
    for (const [v, t] of [["", "Choose..."], ["yes", "Yes"], ["no", "No"]]) {
      field.append(el("option", {value: v}, t));
    }
  } else if (q.kind === "CHOICE") {
    field = el("select", {id, name: q.id});
    field.append(el("option", {value: ""}, "Choose..."));
    for (const c of q.choices) field.append(el("option", {value: c}, c));
  } else if (q.kind === "LONG_TEXT") {
    field = el("textarea", {id, name: q.id, rows: "4", maxlength: String(q.maxLength)});
  } else {
    const type = {DATE: "date", MONEY: "number"}[q.kind] || "text";
    field = el("input", {id, name: q.id, type});
    if (q.kind === "MONEY") { field.setAttribute("step", "0.01"); field.setAttribute("min", "0"); }
    if (q.maxLength) field.setAttribute("maxlength", String(q.maxLength));
  }
  if (q.required) field.setAttribute("required", "");
  box.append(field);
  if (q.help) box.append(el("br"), el("small", {}, q.help));
  if (q.explainIf) {
    const eid = "e_" + q.id;  // apart from the questions' fields: "q_" + "fee_explanation"
    // Shown only while the answer chosen calls for it (and only then sent, see calledFor).
    const explain = el("span", {id: "x_" + q.id});
    explain.append(el("br"), el("label", {for: eid}, q.explainLabel || "Please explain"));
    explain.append(el("br"), el("textarea", {id: eid, name: q.id + "_explanation", rows: "3"}));
    explain.hidden = true;
    field.addEventListener("change", () => { explain.hidden = !calledFor(q); });
    box.append(explain);
  }
  return box;
}
// Whether the yes/no chosen is the one the question asks to explain. An explanation typed and
// then left beside the other answer is not sent: the pack would print it under an answer it
// contradicts, and the server refuses it.
function calledFor(q) {
  return document.getElementById("q_" + q.id).value === q.explainIf;
}
// Each field by its own id, never form.elements[name]: a question's id may be a name the
// form's list already has ("length", "item") or one of the page's own ("sig", "attest").
function value(q) {
  const raw = document.getElementById("q_" + q.id).value.trim();
  if (raw === "") return undefined;
  if (q.kind === "YES_NO") return raw === "yes";
  if (q.kind === "MONEY") return Math.round(parseFloat(raw) * 100);
  return raw;
}
// One random key for every attempt at this link from this tab, kept across a reload: a retry
// after a lost answer gets the receipt instead of being told the link was used.
const attemptName = "coverproof-attempt:" + token;
function attemptKey() {
  try {
    const kept = sessionStorage.getItem(attemptName);
    if (kept) return kept;
  } catch (error) { /* storage refused: this page's key only */ }
  const fresh = Array.from(crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  try { sessionStorage.setItem(attemptName, fresh); } catch (error) { /* as above */ }
  return fresh;
}
async function start() {
  const body = await call(%(form)s, {t: token});
  main.replaceChildren();
  if (body.errors) { main.append(el("p", {role: "alert"}, body.errors[0].message)); return; }
  const f = body.data.recipientForm;
  const heading = el("h1", {tabindex: "-1"}, f.templateName);
  main.append(heading, el("p", {}, f.firmName + " asks " + f.recipientName +
    " to complete this form" + (f.dueDate ? " by " + f.dueDate : "") + "."));
  const form = el("form", {id: "form", novalidate: ""});
  for (const q of f.questions) form.append(input(q));
  const attest = el("p");
  attest.append(el("input", {type: "checkbox", id: "attest"}), " ",
    el("label", {for: "attest"}, f.attestation));
  const sign = el("p");
  sign.append(el("label", {for: "sig"}, "Your full name (signature) *"), el("br"),
    el("input", {id: "sig", required: "", maxlength: "200", autocomplete: "name"}));
  const status = el("div", {role: "status", "aria-live": "polite"});
  // The question an error names (answers.<id>, or its explanation's) by its label: the
  // recipient never sees ids. A question's own id first: another's explanation may share it.
  // Another field (the statement's box) is named by its message alone.
  const where = (field) => {
    if (field === "signatureName") return "Your full name";
    if (!field.startsWith("answers.")) return null;
    const id = field.slice("answers.".length);
    const asked = f.questions.find((q) => q.id === id);
    if (asked) return asked.label;
    const explained = f.questions.find((q) => q.explainIf && id === q.id + "_explanation");
    return explained ? explained.label + " (explanation)" : null;
  };
  let attempt = null;  // made at the first Submit, and sent with every one after it
  form.append(attest, sign, el("button", {type: "submit"}, "Submit"), status);
  main.append(form);
  heading.focus();  // the button that had focus is gone
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answers = {};
    for (const q of f.questions) {
      const v = value(q);
      if (v !== undefined) answers[q.id] = v;
      const e = q.explainIf && calledFor(q) ? document.getElementById("e_" + q.id) : null;
      if (e && e.value.trim()) answers[q.id + "_explanation"] = e.value.trim();
    }
    const input = {answers, attestationAccepted: document.getElementById("attest").checked,
      signatureName: document.getElementById("sig").value};
    attempt = attempt || attemptKey();
    input.idempotencyKey = attempt;
    // It may have gone through: the same answers again get its receipt, other answers would
    // be refused as a second submission.
    const unconfirmed = () => status.replaceChildren(el("p", {role: "alert"}, "We could not " +
      "confirm your submission. Press Submit again without changing your answers: it will " +
      "not be sent twice."));
    let result;
    try {
      result = await call(%(submit)s, {t: token, i: input});
    } catch (error) {
      unconfirmed();
      return;
    }
    status.replaceChildren();
    const code = result.errors && result.errors[0].extensions && result.errors[0].extensions.code;
    if (code === "INTERNAL_SERVER_ERROR" || code === "RATE_LIMITED") {
      unconfirmed();
      return;
    }
    if (result.errors) {
      const list = el("ul");
      for (const e of result.errors) {
        for (const item of (e.extensions && e.extensions.fields) || [{message: e.message}]) {
          const named = item.field && where(item.field);
          list.append(el("li", {}, (named ? named + ": " : "") + item.message));
        }
      }
      status.append(el("p", {}, "Please correct:"), list);
      return;
    }
    form.replaceChildren(el("p", {}, "Thank you: your answers were submitted. We are " +
        "emailing you a copy of this receipt."),
      el("p", {}, "Receipt (SHA-256 of your response): "),
      el("code", {}, result.data.submitDeclaration.responseSha256));
  });
}
// This tab pressed Submit before (its key is kept) and has been reloaded since: ask whether that
// submission arrived before opening the form, which is refused once it has.
async function arrived() {
  let key = null;
  try { key = sessionStorage.getItem(attemptName); } catch (error) { /* none */ }
  if (!key) return false;
  const body = await call(%(receipt)s, {t: token, k: key});
  if (body.errors) {
    // Nothing arrived with it, or the link is no good: the form comes next, and says so.
    const code = body.errors[0].extensions && body.errors[0].extensions.code;
    if (code !== "RATE_LIMITED" && code !== "INTERNAL_SERVER_ERROR") return false;
    // Not the form: if the answers did arrive, it would only say the link was used.
    main.replaceChildren(el("p", {role: "alert"}, "We could not check whether your answers " +
      "arrived. Reload this page to try again."));
    return true;
  }
  const heading = el("h1", {tabindex: "-1"}, "Your declaration");
  main.replaceChildren(heading, el("p", {}, "Thank you: your answers were submitted."),
    el("p", {}, "Receipt (SHA-256 of your response): "),
    el("code", {}, body.data.submissionReceipt.responseSha256));
  heading.focus();
  return true;
}
document.getElementById("open").addEventListener("click", async () => {
  main.replaceChildren(el("p", {role: "status"}, "Opening the form..."));
  try {
    if (!(await arrived())) await start();
  } catch (error) {
    main.replaceChildren(el("p", {role: "alert"},
      "The form could not be opened. Check your connection, then reload this page."));
  }
}, {once: true});
"""


def render() -> tuple[str, dict[str, str]]:
    nonce = secrets.token_urlsafe(16)
    script = _SCRIPT % {
        "form": json.dumps("sha256:" + document_id(first_party.RECIPIENT_FORM)),
        "submit": json.dumps("sha256:" + document_id(first_party.SUBMIT_DECLARATION)),
        "receipt": json.dumps("sha256:" + document_id(first_party.SUBMISSION_RECEIPT)),
    }
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Your declaration - CoverProof</title>"
        f'<style nonce="{nonce}">body{{font-family:system-ui,sans-serif;max-width:40rem;'
        "margin:2rem auto;padding:0 1rem;line-height:1.5}input,select,textarea{font-size:1rem;"
        "padding:.4rem;width:100%;box-sizing:border-box}input[type=checkbox]{width:auto}"
        "button{font-size:1rem;padding:.5rem 1rem}code{word-break:break-all}</style></head>"
        '<body><main id="main"><h1>Your declaration</h1>'
        "<p>You have been asked to complete a declaration. Opening it is recorded on the "
        "firm's audit trail.</p>"
        '<p><button id="open" type="button">Open the form</button></p></main>'
        f'<script nonce="{nonce}">{script}</script></body></html>'
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return body, {"content-security-policy": csp, "cache-control": "no-store"}


async def respond_page(request: Request) -> Response:
    body, headers = render()
    return HTMLResponse(body, headers=headers)


ROUTES = [
    Route("/respond", respond_page, methods=["GET"]),
    # Links sent before the token moved to the fragment: the page reads it from the path.
    Route("/respond/{token}", respond_page, methods=["GET"]),
]
