"""KFP components: one lightweight component per pipeline step."""
