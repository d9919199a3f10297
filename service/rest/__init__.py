"""The HTTP adapter: FastAPI routes (catdog's own and the page), middleware, uploads, response schemas."""
