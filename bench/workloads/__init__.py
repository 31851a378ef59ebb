"""One module per workload; each takes a running Server and returns a JSON-able dict."""
