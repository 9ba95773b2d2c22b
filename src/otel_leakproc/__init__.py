"""otel-leakproc: memory, goroutine and lock-contention leak detection from pushed profiles."""

__version__ = "0.1.0"

__all__ = ["__version__"]
