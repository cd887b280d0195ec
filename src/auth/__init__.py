"""Bearer-token authentication: Better Auth JWTs (HS256 secret, or a JWKS)."""
