"""glassgem.synth"""
