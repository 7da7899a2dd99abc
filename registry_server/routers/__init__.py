"""One router per resource; each route parses, calls a service, shapes the response."""
