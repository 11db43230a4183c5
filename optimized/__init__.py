"""optimized"""
