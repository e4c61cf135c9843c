"""Does rank_teachers order teachers by their W2S students' gold error?"""
