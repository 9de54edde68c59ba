"""glassgem.data"""
