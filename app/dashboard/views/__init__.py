"""The dashboard's pages as data: one module per page, each a function that takes the engine
(and what else the page needs) with the page's parameters and returns a typed object holding
everything its template shows. They read through the same store and service functions as the
JSON API (`app.store.queries`, `app.registry.model_versions`, `app.drift.reports`,
`app.audit.ledger`, ...), never SQL of their own; the routes render what they return."""
