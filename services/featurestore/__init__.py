"""FeatureStore service: computes features from records and serves them online and as training sets (Feast)."""
