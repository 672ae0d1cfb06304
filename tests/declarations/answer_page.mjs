// Runs the answer page's script (the file named first) in a bare stand-in for a browser: a DOM
// of plain objects that records listeners, and a fetch that records what is sent and answers
// with the form ("form"), with an error ("refused") or fails as an unreachable network does
// ("offline"), or holds a key from a submission sent earlier that arrived ("kept"), did not
// ("kept-unreceived"), or cannot be asked after now ("kept-limited"), or opens the form and
// then refuses its submission with a server error ("submit-failed") or as invalid
// ("submit-invalid") or accepts it ("submit-ok"), as the third argument says. Prints, as
// JSON, what was fetched once the script has run and settled, how the click listener was
// added, what was fetched after "open" was clicked, and what the page then says; in the
// submit modes, what two presses of Submit (one, once accepted) sent and what the page said
// after them, and which explanation boxes showed before and after the answers were chosen.
// A fourth argument, "path", opens the page through a link of the form mailed
// before the token moved to the fragment. The page is served under a path prefix (as a
// LINK_BASE_URL with a path serves it).
import { readFileSync } from "node:fs";

const byId = {};

class Element {
  constructor(tag) {
    Object.assign(this, {
      tag, attributes: {}, children: [], listeners: {}, options: {}, textContent: "",
      value: "", checked: false,
    });
  }
  setAttribute(name, value) {
    this.attributes[name] = value;
    if (name === "id") byId[value] = this;
  }
  // A form's controls by name or id, as a browser's form.elements gives them: a name its
  // collection already has ("length", "item") gives that instead, and a name that two
  // controls answer to gives a list of both, whose value is "".
  get elements() {
    const all = (node) => !(node instanceof Element) ? []
      : [node, ...node.children.flatMap(all)];
    const named = (name) => all(this).filter(
      (node) => node !== this && (node.attributes.name === name || node.attributes.id === name));
    const own = { length: 0, item: () => null, namedItem: () => null };
    return new Proxy({}, {
      get: (_, name) => name in own ? own[name]
        : named(name).length > 1 ? { value: "" } : named(name)[0],
    });
  }
  texts() {
    const inner = (child) => child instanceof Element ? child.texts() : [String(child)];
    return [this.textContent, ...this.children.flatMap(inner)];
  }
  append(...nodes) { this.children.push(...nodes); }
  replaceChildren(...nodes) { this.children = nodes; }
  addEventListener(type, listener, options) {
    this.listeners[type] = listener;
    this.options[type] = options ?? {};
  }
  focus() { globalThis.focused = this.tag; }
}

const FORM = {
  firmName: "Loop Advisers Ltd", recipientName: "Pat Doe", templateName: "Fitness", dueDate: null,
  attestation: "I confirm.",
  // Ids a template may give its questions that are also names the page itself, or a form's
  // list of controls, already has.
  questions: [
    // An id a question without an explanation would have given its explanation's field.
    { id: "q1_explanation", kind: "MONEY", label: "Fee?", required: true, choices: [] },
    { id: "q1", kind: "YES_NO", label: "Ever?", required: true, choices: [] },
    { id: "length", kind: "SHORT_TEXT", label: "Term?", required: true, choices: [],
      maxLength: 200 },
    { id: "sig", kind: "YES_NO", label: "Signed before?", required: false, choices: [],
      explainIf: "yes" },
    // Explanations typed, then left beside the other answer or beside no answer.
    { id: "past", kind: "YES_NO", label: "Refused?", required: true, choices: [],
      explainIf: "yes" },
    { id: "gap", kind: "YES_NO", label: "Covered?", required: false, choices: [],
      explainIf: "no" },
  ],
};
const KEY = "k".repeat(32);
const RECEIPT = { submittedAt: "2026-11-29T10:00:00Z", responseSha256: "ab".repeat(32) };
const [script, token, network, link] = process.argv.slice(2);
const elements = { main: new Element("main"), open: new Element("button") };
const fetched = [];
Object.assign(globalThis, {
  document: {
    getElementById: (id) => elements[id] ?? byId[id] ?? null,
    createElement: (tag) => new Element(tag),
  },
  // The link as mailed now (its token in the fragment), or as mailed before ("path").
  location: link === "path"
    ? { pathname: "/app/respond/" + encodeURIComponent(token), hash: "" }
    : { pathname: "/app/respond", hash: "#token=" + encodeURIComponent(token) },
  // "kept" and "kept-unreceived": this tab sent a submission earlier (its key is kept), which
  // arrived or did not.
  sessionStorage: {
    getItem: () => (network.startsWith("kept") ? KEY : null),
    setItem: () => {},
  },
  fetch: async (url, init) => {
    const body = JSON.parse(init.body);
    fetched.push({ url, method: init.method, body });
    if (network === "offline") throw new TypeError("Failed to fetch");
    if (body.variables.k !== undefined) {
      const refusal = (code, message) => ({ errors: [{ message, extensions: { code } }] });
      const answer = {
        kept: { data: { submissionReceipt: RECEIPT } },
        "kept-unreceived": refusal("NOT_FOUND", "Nothing was submitted with this key."),
        "kept-limited": refusal("RATE_LIMITED", "Too many requests; try again shortly."),
      }[network];
      return { json: async () => answer };
    }
    if (body.variables.i !== undefined) {  // the submit modes
      if (network === "submit-ok") {
        return { json: async () => ({ data: { submitDeclaration: RECEIPT } }) };
      }
      const answer = network === "submit-failed"
        ? { errors: [{ message: "Internal server error.",
          extensions: { code: "INTERNAL_SERVER_ERROR" } }] }
        : { errors: [{ message: "Some answers are not valid.", extensions: {
          code: "BAD_USER_INPUT", fields: [
            { field: "answers.q1", message: "Choose one." },
            { field: "answers.q1_explanation", message: "Enter a whole number of pence." },
            { field: "answers.past_explanation", message: "Give an explanation only when..." },
            { field: "signatureName", message: "Sign with your full name." },
            { field: "attestationAccepted", message: "Accept the statement to submit." },
          ] } }] };
      return { json: async () => answer };
    }
    if (network === "form" || network === "kept-unreceived" || network.startsWith("submit")) {
      return { json: async () => ({ data: { recipientForm: FORM } }) };
    }
    return { json: async () => ({ errors: [{ message: "This link is not valid." }] }) };
  },
});

const settled = () => new Promise((resolve) => setTimeout(resolve, 50));
new Function(readFileSync(script, "utf8"))();
await settled();
const loaded = fetched.length;
const once = elements.open.options.click?.once === true;
await elements.open.listeners.click();
await settled();
const shown = elements.main.children.map((child) => [
  child.tag, child.attributes.role ?? null, child.textContent,
]);
const focused = globalThis.focused ?? null;
// The form answered, and Submit pressed twice: what each press sent, and what the page said.
let submitted = [], status = [], explained = {};
if (network.startsWith("submit")) {
  const form = elements.main.children.find((child) => child.tag === "form");
  // Which explanation boxes show: none before an answer is chosen, then those called for.
  const boxes = () => Object.fromEntries(["sig", "past", "gap"].map(
    (id) => [id, !(byId["x_" + id]?.hidden ?? false)]));
  explained.before = boxes();
  Object.assign(byId.q_q1_explanation, { value: "12.50" });
  Object.assign(byId.q_q1, { value: "no" });
  Object.assign(byId.q_length, { value: "Five years" });
  Object.assign(byId.q_sig, { value: "yes" });
  Object.assign(byId.e_sig, { value: "Once, in 2020" });
  Object.assign(byId.q_past, { value: "no" });
  Object.assign(byId.e_past, { value: "Refused in 2019" });
  Object.assign(byId.e_gap, { value: "Not covered since May" });
  for (const id of ["sig", "past", "gap"]) byId["q_" + id].listeners.change?.();
  explained.after = boxes();
  Object.assign(byId.attest, { checked: true });
  Object.assign(byId.sig, { value: "Pat Doe" });
  for (let press = 0; press < (network === "submit-ok" ? 1 : 2); press += 1) {
    await form.listeners.submit({ preventDefault: () => {} });
  }
  submitted = fetched.filter((f) => f.body.variables.i).map((f) => f.body.variables.i);
  // Accepted, the form holds only the thank-you and the receipt.
  const box = form.children.find((child) => child.attributes.role === "status") ?? form;
  status = box.texts().filter(Boolean);
}
console.log(JSON.stringify({
  loaded, once, clicked: fetched, shown, focused, submitted, status, explained,
}));
