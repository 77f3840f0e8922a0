"""Request and response bodies (pydantic) shared by the routes, the UI and the domain."""
