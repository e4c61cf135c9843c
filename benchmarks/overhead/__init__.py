"""What does watching cost? (check vs bare forward, fit with vs without the monitor)"""
