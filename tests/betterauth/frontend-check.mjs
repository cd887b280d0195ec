// Runs the README's frontend code (frontend/*.mjs, which README.md quotes verbatim) the way
// a browser runs it, against a real Better Auth (server.mjs) and the real backend.
// A browser keeps Better Auth's session cookie and sends its page's Origin: Node's fetch
// does neither, so it gets a cookie jar and the Origin header here. The page is on the
// origin Better Auth runs on, as with Better Auth inside a Next.js app.
//
// env: NEXT_PUBLIC_BETTER_AUTH_URL, NEXT_PUBLIC_API_URL, JWT_SECRET
// Prints one JSON line with what each step returned; tests/test_betterauth.py checks it.
const authOrigin = new URL(process.env.NEXT_PUBLIC_BETTER_AUTH_URL).origin;
const pageOrigin = authOrigin;
const cookies = new Map();
const browserFetch = globalThis.fetch;
const seen = [];

// A user whose calls a proxy in front of the backend answers with its own HTML 502 page.
const BROKEN_PROXY_USER = "behind-a-failing-proxy";

globalThis.fetch = async (input, init) => {
  const request = new Request(input, init);
  const headers = new Headers(request.headers);
  const url = new URL(request.url);
  if (url.pathname.startsWith(`/api/${BROKEN_PROXY_USER}/`)) {
    const page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    const proxyHeaders = { "content-type": "text/html", "retry-after": "7" };
    return new Response(page, { status: 502, headers: proxyHeaders });
  }
  headers.set("origin", pageOrigin);
  if (url.origin === authOrigin && cookies.size) {
    headers.set("cookie", [...cookies].map(([name, value]) => `${name}=${value}`).join("; "));
  }
  const response = await browserFetch(new Request(request, { headers }));
  if (url.origin === authOrigin) {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const at = pair.indexOf("=");
      cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
  } else {
    seen.push({
      method: request.method,
      path: url.pathname + url.search,
      status: response.status,
      cors: response.headers.get("access-control-allow-origin"),
    });
  }
  return response;
};

const { authClient, getSessionAndToken, getToken, tasksOf, ApiError } = await import(
  "./frontend/todo-api.mjs"
);
const { backendToken } = await import("./frontend/backend-token.mjs");

const email = `reader-${Date.now()}@example.com`;
const result = {};
const signUp = await authClient.signUp.email({ email, password: "correct horse 42", name: "R" });
if (signUp.error) throw new Error(`sign-up: ${JSON.stringify(signUp.error)}`);
await authClient.signOut();
const signIn = await authClient.signIn.email({ email, password: "correct horse 42" });
if (signIn.error) throw new Error(`sign-in: ${JSON.stringify(signIn.error)}`);

const { session, token: headerToken } = await getSessionAndToken();
const userId = session.user.id;
result.userId = userId;
result.headerToken = headerToken;
result.token = await getToken();

const mine = tasksOf(userId);
const created = await mine.create({ title: "Buy milk", description: "2 litres" });
const listed = await mine.list("?completed=false&limit=20");
const fetched = await mine.get(created.id);
const updated = await mine.update(created.id, { title: "Buy oat milk" });
const toggled = await mine.toggle(created.id);
const done = await tasksOf(userId, headerToken).list("?completed=true");
await mine.remove(created.id);
result.tasks = { created, listed, fetched, updated, toggled, done };

const viaSecret = tasksOf(userId, await backendToken(userId));
result.viaSecret = await viaSecret.create({ title: "signed with the shared secret" });

try {
  await tasksOf("someone-else").list();
} catch (error) {
  if (!(error instanceof ApiError)) throw error;
  result.otherUser = { status: error.status, code: error.code, message: error.message };
}
try {
  await tasksOf(BROKEN_PROXY_USER).list();
} catch (error) {
  if (!(error instanceof ApiError)) throw error;
  result.brokenProxy = {
    status: error.status,
    code: error.code ?? null,
    retryAfter: error.retryAfter,
    message: error.message,
  };
}
await authClient.signOut();
try {
  await getToken();
} catch (error) {
  result.signedOut = { status: error.status, code: error.code };
}
result.requests = seen;
console.log(JSON.stringify(result));
