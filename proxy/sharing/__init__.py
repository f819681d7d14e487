"""What each vendor receives: the sharing policy (``drop_fields``) applied to district answers
while they stream, and the access ledger of what went out (docs/configuration.md "Sharing
policy", docs/http-api.md ``GET /admin/ledger``)."""
