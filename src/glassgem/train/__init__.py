"""glassgem.train"""
