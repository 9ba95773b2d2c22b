"""Several replicas sharing the series through Redis (`state.backend: redis`): docs/scaling.md."""
