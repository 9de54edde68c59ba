"""glassgem.model.encoders"""
