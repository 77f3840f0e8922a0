"""REST /api/v1: one router per resource; each calls the domain and answers HTTP."""
