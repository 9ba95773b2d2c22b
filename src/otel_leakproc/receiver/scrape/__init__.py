"""The scrape receiver: pull profiles from `net/http/pprof` targets (static or Kubernetes pods) into the
same ingest core as uploads. See docs/scrape.md.

Import from the submodules (`config`, `manager`, `targets`, ...): the settings loader reads `config`
without pulling in the HTTP client stack, which `analyze` never needs.
"""
