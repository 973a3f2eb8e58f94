"""Chart tests: helm lint, helm template and Kubernetes schema validation."""
