"""KFP pipelines: wiring of the components."""
