"""Plain functions of flows whose data is not "one file → rows"; no Luigi here."""
