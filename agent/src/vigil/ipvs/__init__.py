"""vigil.ipvs"""
