"""Reading results: rank correlations with ground truth, and the aggregation of many runs' result.json files."""
