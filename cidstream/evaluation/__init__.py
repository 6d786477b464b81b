"""The science of measuring: AP50 on labelled images, bootstrap intervals, select/report splits,
the clear-weather check, and the stability and naturalness metrics of dehazed video."""
