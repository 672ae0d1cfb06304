// Runs the answer page's script (the file named first) in a bare stand-in for a browser: a DOM
// of plain objects that records listeners, and a fetch that records what is sent and answers
// with the form ("form"), with an error ("refused") or fails as an unreachable network does
// ("offline"), or holds a key from a submission sent earlier that arrived ("kept"), did not
// ("kept-unreceived"), or cannot be asked after now ("kept-limited"), as the third argument
// says. Prints, as JSON, what was fetched once the
// script has run and settled, how the click listener was added, what was fetched after "open"
// was clicked, and what the page then says.
import { readFileSync } from "node:fs";

class Element {
  constructor(tag) {
    Object.assign(this, {
      tag, attributes: {}, children: [], listeners: {}, options: {}, textContent: "",
    });
  }
  setAttribute(name, value) { this.attributes[name] = value; }
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
  questions: [{ id: "q1", kind: "YES_NO", label: "Ever?", required: true, choices: [] }],
};
const KEY = "k".repeat(32);
const RECEIPT = { submittedAt: "2026-11-29T10:00:00Z", responseSha256: "ab".repeat(32) };
const [script, token, network] = process.argv.slice(2);
const elements = { main: new Element("main"), open: new Element("button") };
const fetched = [];
Object.assign(globalThis, {
  document: {
    getElementById: (id) => elements[id] ?? null,
    createElement: (tag) => new Element(tag),
  },
  location: { pathname: "/respond/" + encodeURIComponent(token) },
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
    if (network === "form" || network === "kept-unreceived") {
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
console.log(JSON.stringify({ loaded, once, clicked: fetched, shown, focused }));
