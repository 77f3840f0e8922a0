"""One profile per printer maker (profiles/<vendor>.py); the registry collects them.

Adding a vendor, a counter or a private-MIB decoder is one file here plus a line in registry.py;
every OID list (first poll, steady poll, discovery's identifying GET) is derived from the registry.
"""
