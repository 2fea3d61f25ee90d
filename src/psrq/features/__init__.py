"""psrq.features"""
