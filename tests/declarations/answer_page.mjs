// Runs the answer page's script (the file named first) in a bare stand-in for a browser: a DOM
// of plain objects that records listeners, and a fetch that records what is sent. Prints, as
// JSON, what was fetched once the script has run and settled, and then once "open" is clicked.
import { readFileSync } from "node:fs";

class Element {
  constructor(tag) {
    Object.assign(this, { tag, attributes: {}, children: [], listeners: {}, textContent: "" });
  }
  setAttribute(name, value) { this.attributes[name] = value; }
  append(...nodes) { this.children.push(...nodes); }
  replaceChildren(...nodes) { this.children = nodes; }
  addEventListener(type, listener) { this.listeners[type] = listener; }
}

const elements = { main: new Element("main"), open: new Element("button") };
const fetched = [];
Object.assign(globalThis, {
  document: {
    getElementById: (id) => elements[id] ?? null,
    createElement: (tag) => new Element(tag),
  },
  location: { pathname: "/respond/" + encodeURIComponent(process.argv[3]) },
  sessionStorage: { getItem: () => null, setItem: () => {} },
  fetch: async (url, init) => {
    fetched.push({ url, method: init.method, body: JSON.parse(init.body) });
    return { json: async () => ({ errors: [{ message: "not a real server" }] }) };
  },
});

const settled = () => new Promise((resolve) => setTimeout(resolve, 50));
new Function(readFileSync(process.argv[2], "utf8"))();
await settled();
const loaded = fetched.length;
elements.open.listeners.click();
await settled();
console.log(JSON.stringify({ loaded, clicked: fetched }));
