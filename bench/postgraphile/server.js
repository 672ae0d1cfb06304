// PostGraphile v4 as a library, against the same database, as the same role, with the tenant
// set per transaction from the x-firm-id header (pgSettings), like our app's RLS transaction.
const http = require("http");
const { postgraphile } = require("postgraphile");

const [, , databaseUrl, port] = process.argv;
const middleware = postgraphile(databaseUrl, "public", {
  pgSettings: (req) => ({ "app.firm_id": req.headers["x-firm-id"] || "" }),
  graphiql: false,
  disableQueryLog: true,
  retryOnInitFail: false,
  dynamicJson: true,
  setofFunctionsContainNulls: false,
  ignoreRBAC: false,
});
http.createServer(middleware).listen(Number(port), "127.0.0.1", () => {
  console.log(`postgraphile listening on ${port}`);
});
