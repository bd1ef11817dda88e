"""Metrics: FID, identity similarity, LPIPS/L2, and the controlled transfer benchmark."""
