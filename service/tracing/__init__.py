"""OpenTelemetry traces of the serving path (docs/operations.md "Tracing").

`context` is all the request path imports while tracing is off: one context variable that stays None. The SDK
(`setup`, `spans`, `propagation`) is imported only when CATDOG_TRACING is on.
"""
