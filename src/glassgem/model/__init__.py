"""glassgem.model"""
