// lib/backend-token.js: on the server only (a route handler, a server action), since
// JWT_SECRET must never reach the browser.
import { SignJWT } from "jose";

// A secret only for the API's tokens, the same value on the backend (JWT_SECRET there too):
// not BETTER_AUTH_SECRET, which also signs Better Auth's session cookies.
const secret = new TextEncoder().encode(process.env.JWT_SECRET);

// An HS256 token the backend accepts, for the user of a Better Auth session:
//   const session = await auth.api.getSession({ headers: await headers() });
//   const token = await backendToken(session.user.id);
export function backendToken(userId) {
  return new SignJWT({ sub: userId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime("15m")
    .sign(secret);
}
