// lib/todo-api.js: call the Todo backend as the signed-in Better Auth user.
import { createAuthClient } from "better-auth/client"; // in React: "better-auth/react"
import { jwtClient } from "better-auth/client/plugins";

export const authClient = createAuthClient({
  baseURL: process.env.NEXT_PUBLIC_BETTER_AUTH_URL, // where Better Auth runs (your app)
  plugins: [jwtClient()],
});

const API_URL = process.env.NEXT_PUBLIC_API_URL; // the backend, e.g. https://you-todo.hf.space

export class ApiError extends Error {
  // body: the backend's JSON error, or undefined when the response was not JSON (the HTML
  // error page of a proxy in front of the backend, say).
  constructor(status, body, retryAfter) {
    super(body?.error ?? `HTTP ${status}${body === undefined ? " (not a JSON response)" : ""}`);
    this.status = status; // 401: sign in again; 403: not this user's tasks; 503: retry
    this.code = body?.code; // UNAUTHORIZED, TOKEN_EXPIRED, FORBIDDEN, AUTH_UNAVAILABLE, …
    this.retryAfter = retryAfter; // seconds, on a 503
  }
}

// A fresh JWT (valid 15 minutes) for the signed-in user: GET /api/auth/token.
export async function getToken() {
  const { data, error } = await authClient.token();
  if (error || !data?.token) {
    throw new ApiError(401, { error: "Not signed in", code: "UNAUTHORIZED" });
  }
  return data.token;
}

// Or the JWT that comes with every session check, in the `set-auth-jwt` header.
export async function getSessionAndToken() {
  let token = null;
  const { data: session } = await authClient.getSession({
    fetchOptions: {
      onSuccess: (ctx) => {
        token = ctx.response.headers.get("set-auth-jwt");
      },
    },
  });
  return { session, token };
}

export async function todoApi(path, { method = "GET", body, token } = {}) {
  const response = await fetch(`${API_URL}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token ?? (await getToken())}`,
      ...(body !== undefined && { "Content-Type": "application/json" }),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (response.status === 204) return null;
  // Text first, then JSON if it is: a proxy's HTML 502 page must become an ApiError with
  // its status, not a SyntaxError from response.json().
  const data = parseJson(await response.text());
  if (!response.ok || data === undefined) {
    const retryAfter = Number(response.headers.get("Retry-After")) || undefined;
    throw new ApiError(response.status, data, retryAfter);
  }
  return data;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // not JSON
  }
}

// The task endpoints of one user, whose id is session.user.id (the token's `sub`):
//   const { data: session } = await authClient.getSession();
//   const open = await tasksOf(session.user.id).list("?completed=false");
// Without `token`, each call asks Better Auth for a fresh one.
export function tasksOf(userId, token) {
  const base = `/api/${encodeURIComponent(userId)}/tasks`;
  return {
    list: (query = "") => todoApi(`${base}${query}`, { token }), // "?completed=false&limit=20"
    create: (task) => todoApi(base, { method: "POST", body: task, token }),
    get: (id) => todoApi(`${base}/${id}`, { token }),
    update: (id, changes) => todoApi(`${base}/${id}`, { method: "PUT", body: changes, token }),
    toggle: (id) => todoApi(`${base}/${id}/complete`, { method: "PATCH", token }),
    remove: (id) => todoApi(`${base}/${id}`, { method: "DELETE", token }),
  };
}
