"""WeChat-facing clients and the mini-program request/response shapes."""
