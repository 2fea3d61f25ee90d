"""psrq.rank"""
