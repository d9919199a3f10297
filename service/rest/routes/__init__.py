"""Thin APIRouters: HTTP in, the data plane, HTTP out. No model or image logic lives here."""
