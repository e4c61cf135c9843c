"""Which stopping rule earns the default? (stopping regret on recorded runs)"""
