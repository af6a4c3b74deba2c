"""Performance harness: nnp-lab against its peers, measured in one run."""
