// Apollo Client's own persisted-queries link against a running CoverProof API.
//
//   node apq.mjs <graphql url> <session cookie value> [operation name suffix]
//
// Runs one query (`query Firm<suffix> { firm { name } }`) twice (no cache), as a signed-in
// first-party web app would. Prints one JSON line per HTTP request the link made
// ({"request": n, "hasQuery", "hasPersistedQuery", "status", "codes", "data"}), then
// {"results": [...]} with what the two queries returned. Exits 1 on any error, with the error on
// stderr.
import crypto from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, cookie, suffix = ""] = process.argv.slice(2);
if (!url || !cookie) {
  console.error("usage: node apq.mjs <graphql url> <session cookie value> [suffix]");
  process.exit(2);
}

let requests = 0;

async function loggingFetch(input, init) {
  const sent = JSON.parse(init.body);
  const response = await fetch(input, init);
  const received = await response.clone().json();
  requests += 1;
  const line = {
    request: requests,
    hasQuery: typeof sent.query === "string",
    hasPersistedQuery: Boolean(sent.extensions && sent.extensions.persistedQuery),
    status: response.status,
    codes: (received.errors || []).map((error) => error.extensions && error.extensions.code),
    data: received.data ?? null,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  return response;
}

const persisted = createPersistedQueryLink({
  sha256: (text) => crypto.createHash("sha256").update(text).digest("hex"),
});
const http = new HttpLink({
  uri: url,
  fetch: loggingFetch,
  headers: { cookie: `__Host-cp_session=${cookie}` },
});
const client = new ApolloClient({ link: persisted.concat(http), cache: new InMemoryCache() });

const FIRM = gql(`query Firm${suffix.replace(/[^A-Za-z0-9_]/g, "")} { firm { name } }`);

try {
  const results = [];
  for (let i = 0; i < 2; i += 1) {
    const { data, error } = await client.query({ query: FIRM, fetchPolicy: "no-cache" });
    if (error) throw error;
    results.push(data);
  }
  process.stdout.write(`${JSON.stringify({ results })}\n`);
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
}
