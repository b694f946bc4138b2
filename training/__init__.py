"""The three-stage parametric training schedule."""
