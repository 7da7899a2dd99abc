"""The gate rules, once, with no web imports: routes parse, call these, shape responses."""
