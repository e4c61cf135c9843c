"""How close is Charikar et al.'s predicted gain to the measured one on a real regression task?"""
