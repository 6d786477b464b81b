"""The fog meter's training: labelled visibility sets (synthetic and real) and the meter's fit."""
