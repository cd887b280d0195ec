"""The HTTP layer: error bodies, the one exception-to-response mapping, middleware, OpenAPI."""
