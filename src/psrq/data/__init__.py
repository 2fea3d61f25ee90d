"""psrq.data"""
