"""Do the logged bounds hold, and how close are the predictions, on real W2S runs?"""
