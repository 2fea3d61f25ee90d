"""psrq.serve"""
