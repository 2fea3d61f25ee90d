"""psrq.report"""
