"""Teaches schemathesis what the ZeroTrace OpenAPI document cannot say with a pattern.

Loaded by schemathesis through SCHEMATHESIS_HOOKS=zt_hooks (this directory on PYTHONPATH);
used by crates/zerotrace/tests/schemathesis.rs and bench/schemathesis.sh.

`format: zt-cursor` (every `cursor` parameter): a list's cursor is a value the server gave as
that list's `next_cursor` (the last row's sort values, encoded and tagged with the sort), or
empty for the first page; any other string is refused with 400 naming `cursor`. A generator
cannot make up a valid one for an arbitrary list, sort and filter, and the only value valid for
every list is the empty one: schema-valid requests carry that.
"""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format("zt-cursor", st.just(""))
