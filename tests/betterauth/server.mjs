// A real Better Auth server for the end-to-end tests (tests/test_betterauth.py): email and
// password sign-in, the jwt plugin, SQLite through better-sqlite3, on 127.0.0.1.
//
//   node server.mjs [--port N] [--alg EdDSA|ES256|ES512|PS256|RS256] [--rotation SECONDS]
//                   [--db FILE]
//
// --port 0 (the default) takes a free port. BETTER_AUTH_SECRET comes from the environment.
// Once it listens it prints one JSON line, {"url": "http://127.0.0.1:PORT", "alg": ...}.
//
// Besides Better Auth's own routes (/api/auth/*), two routes for the tests, which the
// server side of a frontend could equally have:
//   POST /test/sign    {"payload": {...}}  → {"token"}: Better Auth's own signJWT, for
//                                             tokens with chosen claims (exp, iss, aud)
//   POST /test/hs256   {"claims": {...}}    → {"token"}: HS256 with BETTER_AUTH_SECRET,
//                                             signed with jose as a frontend would
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";
import Database from "better-sqlite3";
import { SignJWT } from "jose";

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    alg: { type: "string", default: "EdDSA" },
    rotation: { type: "string" },
    db: { type: "string", default: ":memory:" },
  },
});
const secret = process.env.BETTER_AUTH_SECRET;
if (!secret) {
  console.error("BETTER_AUTH_SECRET must be set");
  process.exit(2);
}

let handle = (_request, response) => {
  response.writeHead(503).end("starting");
};
const server = createServer((request, response) => handle(request, response));
await new Promise((resolve) => server.listen(Number(args.port), "127.0.0.1", resolve));
const baseURL = `http://127.0.0.1:${server.address().port}`;

const jwks = { keyPairConfig: { alg: args.alg } };
if (args.rotation) jwks.rotationInterval = Number(args.rotation);
const auth = betterAuth({
  baseURL,
  secret,
  database: new Database(args.db),
  emailAndPassword: { enabled: true },
  plugins: [jwt({ jwks })],
  telemetry: { enabled: false },
  logger: { level: "error" },
});
const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const authHandler = toNodeHandler(auth);
const hs256Key = new TextEncoder().encode(secret);

async function readJson(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

async function testRoute(request, response) {
  const body = await readJson(request);
  let token;
  if (request.url === "/test/sign") {
    ({ token } = await auth.api.signJWT({ body: { payload: body.payload } }));
  } else if (request.url === "/test/hs256") {
    token = await new SignJWT(body.claims)
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuedAt()
      .setExpirationTime("15m")
      .sign(hs256Key);
  } else {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { "content-type": "application/json" });
  response.end(JSON.stringify({ token }));
}

handle = (request, response) => {
  if (request.url.startsWith("/test/") && request.method === "POST") {
    testRoute(request, response).catch((error) => {
      response.writeHead(500).end(String(error));
    });
    return;
  }
  authHandler(request, response);
};
console.log(JSON.stringify({ url: baseURL, alg: args.alg }));

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
